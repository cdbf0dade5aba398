"""One module per `ktstr` command group; each exposes register(subparsers)."""
