import subprocess
import sys

from mmp_ros.cli import COMMANDS, build_parser


def test_every_command_module_imports_and_has_its_hooks():
    import importlib

    for name, (module_name, _) in COMMANDS.items():
        module = importlib.import_module(module_name)
        assert callable(module.add_arguments), name
        assert callable(module.run), name


def test_help_lists_every_command():
    text = build_parser().format_help()
    for name in COMMANDS:
        assert name in text


def test_cli_help_runs_without_torch_or_rclpy():
    code = (
        'import sys; from mmp_ros.cli import main\n'
        'try:\n    main(["--help"])\nexcept SystemExit:\n    pass\n'
        'assert "torch" not in sys.modules and "rclpy" not in sys.modules, sorted(sys.modules)'
    )
    subprocess.run([sys.executable, '-c', code], check=True, capture_output=True)
