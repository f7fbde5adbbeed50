"""The AMI side: a hardened link per PBX, built on panoramisk's message and action model."""
