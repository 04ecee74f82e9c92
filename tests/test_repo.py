"""Repository promises: CI runs README's test command; the Space front matter matches requirements."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read(name):
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        return f.read()


def test_ci_runs_readme_test_command():
    readme = read("README.md")
    m = re.search(r"Install and run the tests.*?```bash\n(.+?)\n```", readme, re.S)
    assert m, "README must show the test command"
    command = m.group(1).strip()
    ci_lines = [ln.strip() for ln in read(".ci/run").splitlines() if ln.strip() and not ln.startswith("#")]
    assert command in ci_lines


def test_space_front_matter():
    readme = read("README.md")
    front = readme.split("---")[1]
    assert "sdk: gradio" in front and "app_file: app.py" in front
    version = re.search(r"sdk_version: (\S+)", front).group(1)
    assert f"gradio=={version}" in read("requirements.txt")
    assert re.search(r"^title: .+", front, re.M) and re.search(r"^emoji: .+", front, re.M)


def test_embedded_model_is_small_and_safetensors():
    d = os.path.join(ROOT, "assets", "tiny-shakespeare")
    size = os.path.getsize(os.path.join(d, "model.safetensors"))
    assert size <= 16_000_000  # 16 MB (decimal): the stricter reading
    assert not [f for f in os.listdir(d) if f.endswith((".bin", ".pt", ".pkl", ".pth"))]  # nothing to unpickle
