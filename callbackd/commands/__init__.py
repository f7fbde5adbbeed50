"""One module per CLI command that does more than print: each is a thin layer over services."""
