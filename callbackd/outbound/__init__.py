"""Outgoing HTTP and messages: the target guard and the webhook and SMS senders (the
HTTP API server lives in callbackd.http)."""
