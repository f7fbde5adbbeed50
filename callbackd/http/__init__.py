"""Outgoing HTTP: the target guard and the webhook and SMS senders."""
