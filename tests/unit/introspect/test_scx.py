"""introspect/scx.py: sched_ext's exit kinds by the kernel's names, from its BTF."""

from ktstr_vmm.introspect import btf_load as L
from ktstr_vmm.introspect.scx import EXIT_KINDS, exit_kind_name, exit_kinds, is_error_kind


def test_the_recorded_exit_kinds_are_the_kernels(kernel):
    """The table used without a kernel at hand is exactly the real kernel's enum."""
    assert exit_kinds(L.load_btf(kernel.vmlinux, kernel.build_id)) == EXIT_KINDS


def test_exit_kind_names():
    assert [exit_kind_name(k) for k in (0, 1, 1025, 1026, 4242)] == [
        "SCX_EXIT_NONE", "SCX_EXIT_DONE", "SCX_EXIT_ERROR_BPF", "SCX_EXIT_ERROR_STALL",
        "SCX_EXIT_4242"]
    assert exit_kind_name(7, {7: "SCX_EXIT_NEW"}) == "SCX_EXIT_NEW"
    assert [is_error_kind(k) for k in (None, 1, 64, 1024, 1026)] == [
        False, False, False, True, True]
