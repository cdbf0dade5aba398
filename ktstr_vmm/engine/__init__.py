"""VM engines: QEMU (subprocess) and KVM (our own VMM through cffi). See base.py."""
