"""Browser UI templates and assets. The agent console comes with a later issue."""
