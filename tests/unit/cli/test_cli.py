import argparse
import subprocess
import sys

from ktstr_cli import main as cli


def test_every_registered_command_is_in_the_lazy_import_map():
    p = cli.build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == set(cli.COMMAND_NAMES)


def test_a_command_imports_only_its_own_module():
    code = ("import sys; from ktstr_cli import main as cli; cli.build_parser(cli._wanted_module(['runs']));"
            "print('ktstr_cli.commands.kernel' in sys.modules, 'ktstr_cli.commands.runs' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


def test_unknown_command_is_a_usage_error():
    r = subprocess.run([sys.executable, "-m", "ktstr_cli", "frobnicate"], capture_output=True, text=True)
    assert r.returncode == 2
    assert "invalid choice: 'frobnicate'" in r.stderr


def test_version_prints_without_loading_any_command():
    code = ("import sys, io, contextlib; from ktstr_cli import main as cli; out = io.StringIO()\n"
            "with contextlib.redirect_stdout(out): rc = cli.main(['--version'])\n"
            "print(rc, out.getvalue().strip(), any(m.startswith('ktstr_cli.commands.') "
            "for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    from ktstr_vmm import __version__
    assert out.stdout.split() == ["0", "ktstr", __version__, "False"]
