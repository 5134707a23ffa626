"""The command line: the only code that parses argv, prints for humans, installs signal handlers and exits."""
