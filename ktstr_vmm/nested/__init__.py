"""The nested test bed: a real kvm_amd inside a QEMU TCG guest (L1), where the product's
own `ktstr run --engine kvm` boots the kernel again as L2 (docs/kvm-engine.md).

modules  the kernel's irqbypass/kvm/kvm-amd modules, fetched and cached with the kernel
image    L1's read-only root disk (busybox init, Python, the venv, the repo, the caches)
bed      boot L1 under QEMU TCG with a batch of runs, bring the run directories back
inside   what L1 runs: the batch, through the product's CLI, into a tar on the exchange disk
"""
