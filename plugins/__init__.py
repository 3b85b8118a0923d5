"""Built-in plugins. Each module here is written exactly as a third-party plugin would be:
it imports only the public ``dsrouter`` API and registers through the hooks."""
