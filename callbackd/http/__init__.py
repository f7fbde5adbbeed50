"""The HTTP API (CRM side) served inside the daemon; see :mod:`callbackd.http.server`."""
