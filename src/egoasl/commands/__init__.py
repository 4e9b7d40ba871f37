"""One module per `egoasl` sub-command; each exposes `register(subparsers)`."""
