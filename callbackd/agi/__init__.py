"""AGI: the routes the shipped dialplan calls, over FastAGI (in the daemon) or classic AGI."""
