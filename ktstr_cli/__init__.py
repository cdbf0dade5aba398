"""ktstr's command layer: argparse and one module per `ktstr` command; the only code
that imports both ktstr_vmm (the core) and ktstr_tui (the app)."""
