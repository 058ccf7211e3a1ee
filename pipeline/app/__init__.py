"""The commands: the CLI (parses, builds config, calls the library), the demo, --config files."""
