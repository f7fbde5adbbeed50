"""Services: the use cases, between the adapters (AMI, AGI, HTTP, CLI) and the database."""
