"""callbackd: calls back every caller who gave up waiting in an Asterisk queue.

The daemon watches the PBX over AMI, records abandoned queue calls in Postgres and,
within each campaign's calling hours, rings an operator first and then the client.
"""

__version__ = "0.1.0"
