"""Repository promises: CI runs README's test command; the Space front matter matches requirements; the package keeps
its layers (core < interpret/efficiency/beyond < cli), no private names cross modules, `import tinygpt` stays light."""
import os
import re
import subprocess
import sys

from conftest import ROOT


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


def repo_files():
    """Every file a clone holds (git's own files, caches and test output aside)."""
    skip = {".git", "__pycache__", ".pytest_cache", ".ruff_cache", "test-artifacts", "runs", ".gradio"}
    for d, dirs, files in os.walk(ROOT):
        dirs[:] = [x for x in dirs if x not in skip]
        for f in files:
            yield os.path.join(d, f)


def test_every_file_is_under_the_space_limit():
    """A Hugging Face Space refuses plain-Git files over 10 MB: nothing here may need Git LFS."""
    big = [(os.path.relpath(f, ROOT), os.path.getsize(f)) for f in repo_files() if os.path.getsize(f) >= 10_000_000]
    assert not big
    assert "lfs" not in read(".gitattributes") if os.path.exists(os.path.join(ROOT, ".gitattributes")) else True


def test_embedded_model_is_sharded_safetensors():
    d = os.path.join(ROOT, "assets", "tiny-shakespeare")
    files = os.listdir(d)
    assert "model.safetensors.index.json" in files and "config.json" in files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pkl", ".pth"))]  # nothing to unpickle


def imports_of(path):
    import ast

    tree = ast.parse(open(path, encoding="utf-8").read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            yield from ([base] if node.module else [base + a.name for a in node.names])


def module_name(path):
    """tinygpt/efficiency/gqa.py -> "tinygpt.efficiency.gqa"; a package's __init__.py -> the package."""
    parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def absolute_imports(path):
    """The modules (or module.name) a file imports, relative imports resolved against the file's package."""
    name = module_name(path)
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    for n in imports_of(path):
        dots = len(n) - len(n.lstrip("."))
        if not dots:
            yield n
            continue
        base = package.split(".")[:len(package.split(".")) - (dots - 1)]
        yield ".".join(base + ([n[dots:]] if n[dots:] else []))


SUBPACKAGES = ("tinygpt.interpret", "tinygpt.efficiency", "tinygpt.beyond")
FRONT_ENDS = ("tinygpt.cli", "tinygpt.__main__")  # python -m tinygpt: may import everything


def test_layering():
    """tinygpt never imports gradio; the core (the modules directly in tinygpt/) never imports interpret/,
    efficiency/, beyond/ or the command line, and those never import the command line; a tab imports only
    tabs.kit (and, in a tab package, its own modules), never another tab; the kit imports no tab."""
    for f in repo_files():
        rel = os.path.relpath(f, ROOT)
        if not rel.endswith(".py"):
            continue
        names = list(imports_of(f))
        if rel.startswith("tinygpt" + os.sep):
            assert not [n for n in names if n.split(".")[0] == "gradio"], rel
            mod = module_name(f)
            above = [n for n in absolute_imports(f) if n.startswith(tuple(p + "." for p in SUBPACKAGES + FRONT_ENDS))
                     or n in SUBPACKAGES + FRONT_ENDS]
            if os.path.dirname(rel) == "tinygpt" and not mod.startswith(FRONT_ENDS):  # the core
                assert not above, (rel, above)
            elif mod.startswith(SUBPACKAGES):
                assert not [n for n in above if n.startswith(FRONT_ENDS)], (rel, above)
        if rel.startswith("tabs" + os.sep) and rel.count(os.sep) >= 1:
            own = rel.split(os.sep)[1].removesuffix(".py")  # the tab (module or package), or "kit"
            tab_imports = {n.split(".")[1] for n in absolute_imports(f) if n.startswith("tabs.")}
            assert tab_imports <= {"kit", own}, (rel, tab_imports)


def test_no_private_names_across_modules():
    """`from x import _name` reaches into another module's internals: a name used elsewhere is made public."""
    import ast

    ours = ("tinygpt", "tabs", "app", "benchmarks", "conftest", "machine")
    found = []
    for f in repo_files():
        if not f.endswith(".py"):
            continue
        for node in ast.walk(ast.parse(open(f, encoding="utf-8").read())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").split(".")[0] in ours):
                found += [(os.path.relpath(f, ROOT), node.module, a.name) for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    assert not found


def test_import_tinygpt_is_light():
    """`import tinygpt` imports its names lazily: no gradio, transformers, matplotlib, and none of the subpackages
    (a fresh interpreter; the time is printed, not asserted: it depends on the machine)."""
    code = ("import sys, time; t = time.perf_counter(); import tinygpt; t = time.perf_counter() - t; "
            "print(t); print(' '.join(sorted(sys.modules)))")
    env = {**os.environ, "PYTHONPATH": ROOT}
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-500:]
    seconds, modules = out.stdout.splitlines()
    cumulative = [ln.split("|")[1].strip() for ln in out.stderr.splitlines() if ln.rstrip().endswith("| tinygpt")]
    print(f"import tinygpt: {float(seconds) * 1000:.1f} ms wall, {int(cumulative[0]) / 1000:.1f} ms by -X importtime")
    heavy = [m for m in modules.split() if m.split(".")[0] in ("gradio", "transformers", "matplotlib")
             or m.startswith(tuple(p + "." for p in SUBPACKAGES)) or m in SUBPACKAGES]
    assert not heavy


def test_lazy_names_are_the_eager_ones():
    """Every name in tinygpt.__all__ resolves; train and evaluate stay the functions even once their submodules
    (tinygpt.train, tinygpt.evaluate) are imported, as with the eager imports before."""
    import types

    import tinygpt
    import tinygpt.evaluate  # noqa: F401
    import tinygpt.train  # noqa: F401

    for name in tinygpt.__all__:
        assert getattr(tinygpt, name) is not None, name
    assert not isinstance(tinygpt.train, types.ModuleType) and not isinstance(tinygpt.evaluate, types.ModuleType)
    from tinygpt import evaluate, parse_layer_list, parse_layers, train
    assert train.__module__ == "tinygpt.train" and evaluate.__module__ == "tinygpt.evaluate"
    assert parse_layer_list is parse_layers
    assert tinygpt.loading.load_model is tinygpt.load_model  # a submodule by attribute, as before


def test_embedded_model_writes_play_shaped_text():
    """The shipped model loads by name, uses GPT-2's tokenizer, has >= 4 blocks, and writes a play: speaker
    names in capitals on their own line, followed by verse."""
    import re as _re

    import torch

    from tinygpt import generate, load_model

    model, tok = load_model("tiny-shakespeare")
    assert model.config.n_layer >= 4 and tok.encode("Hello world") == [15496, 995]
    x = torch.tensor([tok.encode("ROMEO:\n")] * 2)
    out = generate(model, x, 150, temperature=0.8, top_k=50, generator=torch.Generator().manual_seed(0))
    text = "\n".join(tok.decode(r.tolist()) for r in out)
    speakers = _re.findall(r"^[A-Z][A-Za-z]+(?: [A-Z][A-Za-z]+)?:$", text, _re.M)
    assert len(speakers) >= 4, text


def test_benchmarks_name_the_cpu_when_run_as_scripts(tmp_path):
    """`python benchmarks/x.py` puts benchmarks/ (not the root) on sys.path: machine.py must still find tinygpt."""
    code = "import sys; sys.path.insert(0, sys.argv[1]); import machine; print(machine.describe())"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code, os.path.join(ROOT, "benchmarks")], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-500:]
    assert out.stdout.startswith("CPU: ") and "logical cores" in out.stdout
