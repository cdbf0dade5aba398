"""ktstr workstation TUI: a Textual view over run directories. Imports ktstr_vmm, never
the reverse."""
