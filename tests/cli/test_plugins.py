"""The twistd plugin and the driver plugin package are found the way administrators install them."""

import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def test_twistd_knows_the_pcnet_plugin_and_its_roles():
    out = subprocess.run([str(BIN / "twistd"), "pcnet", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "app" in out.stdout and "provider" in out.stdout


def test_a_vendor_drivers_directory_elsewhere_on_sys_path_joins_the_drivers_package(tmp_path):
    (tmp_path / "drivers").mkdir()
    (tmp_path / "drivers" / "vendor_x.py").write_text("NAME = 'vendor x'\n")
    code = "import drivers.vendor_x as v; print(v.NAME)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": str(tmp_path)})
    assert out.stdout.strip() == "vendor x", out.stderr
