"""Deploy the app to a Hugging Face Space: `python -m tools.deploy_space USER/NAME` (see the README).

A `git push` of this repository to a Space is refused: the Hub takes binary files (the models'
safetensors, the gzipped corpora) only through Xet/LFS, and this repository stores them as plain
git objects. `huggingface_hub`'s upload does what git would need: it sends each file the way the
Hub asks for it (small text files inline, the rest to Xet storage), in one commit.

What goes up (`space_files`): what the app needs to run, as the working tree holds it (tracked
files and new files git does not ignore): `app.py`, `README.md` (its front matter is the Space's
configuration), `gpt/`, `ui/` and `assets/`; not the tests, benchmarks, tools or CI. The Space's
`requirements.txt` is made from this repository's (`space_requirements`): the same packages, PyTorch's
CPU wheel from its own index (PyPI's Linux torch is the CUDA build: gigabytes a CPU Space never uses)
and gradio pinned to the front matter's `sdk_version`. Files on the Space that are no longer in the
list are deleted in the same commit.

    python -m tools.deploy_space USER/NAME --dry-run      # the file list and the requirements, nothing sent
    python -m tools.deploy_space USER/NAME                 # create the Space if needed, upload (HF_TOKEN)
    python -m tools.deploy_space USER/NAME --var GPT_APP_QUEUE_SIZE=16   # also set a Space variable
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
APP_FOLDERS = ("gpt/", "ui/", "assets/")
APP_FILES = ("app.py", "README.md")
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
KEPT_ON_THE_SPACE = {".gitattributes"}  # the Hub writes it; it is not ours to delete
SKIPPED = re.compile(r"(^|/)(__pycache__|\.pytest_cache)/|\.pyc$")


def working_tree_files(root: Path = REPO) -> list[str]:
    """Tracked files and new files git does not ignore (runs, caches and build output stay behind)."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=root,
                         check=True, capture_output=True).stdout.decode("utf-8")
    return sorted(f for f in out.split("\0") if f and (root / f).is_file())


def space_files(root: Path = REPO) -> list[str]:
    """The repository paths that go to the Space (besides the generated requirements.txt)."""
    return [f for f in working_tree_files(root)
            if (f in APP_FILES or f.startswith(APP_FOLDERS)) and not SKIPPED.search(f)]


def front_matter(readme: Path = REPO / "README.md") -> dict:
    """The README's YAML front matter: the Space's configuration (sdk, sdk_version, app_file...)."""
    from huggingface_hub import SpaceCard

    return SpaceCard.load(readme).data.to_dict()


def space_requirements(requirements: Path = REPO / "requirements.txt", sdk_version: str | None = None) -> str:
    """requirements.txt for the Space: torch from PyTorch's CPU index, gradio at the Space's SDK version."""
    sdk_version = sdk_version or front_matter(requirements.parent / "README.md")["sdk_version"]
    lines = [f"# Made by tools/deploy_space.py from requirements.txt: CPU PyTorch, gradio {sdk_version} (the sdk).",
             f"--extra-index-url {TORCH_CPU_INDEX}"]
    for line in requirements.read_text().splitlines():
        spec = line.split("#")[0].strip()
        name = re.match(r"[A-Za-z0-9_.-]+", spec)
        if not spec or name is None:
            continue
        if name.group(0).lower() == "torch":
            pinned = re.fullmatch(r"torch\s*==\s*([\w.]+)", spec)
            if pinned is None:
                raise ValueError(f"requirements.txt must pin torch (torch==X.Y.Z) for the Space's CPU wheel: {spec!r}")
            spec = f"torch=={pinned.group(1)}+cpu"
        elif name.group(0).lower() == "gradio":
            spec = f"gradio=={sdk_version}"
        lines.append(spec)
    return "\n".join(lines) + "\n"


def operations(root: Path, remote: Iterable[str] = ()) -> list:
    """The commit: every Space file, the Space's requirements, and deletions of what is no longer there."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    files = space_files(root)
    ops = [CommitOperationAdd(path_in_repo=f, path_or_fileobj=str(root / f)) for f in files]
    ops.append(CommitOperationAdd(path_in_repo="requirements.txt",
                                  path_or_fileobj=space_requirements(root / "requirements.txt").encode()))
    keep = {*files, "requirements.txt", *KEPT_ON_THE_SPACE}
    ops += [CommitOperationDelete(path_in_repo=f) for f in remote if f not in keep]
    return ops


def deploy(repo_id: str, api=None, variables: dict[str, str] | None = None, private: bool = False,
           root: Path = REPO) -> str:
    """Create the Space (Gradio SDK) if needed and upload the app in one commit; returns the commit URL."""
    from huggingface_hub import HfApi

    api = api or HfApi()
    card = front_matter(root / "README.md")
    if card.get("sdk") != "gradio" or card.get("app_file") != "app.py":
        raise ValueError("README.md's front matter must say sdk: gradio and app_file: app.py")
    api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    for key, value in (variables or {}).items():
        api.add_space_variable(repo_id, key, value)
    remote = api.list_repo_files(repo_id, repo_type="space")
    info = api.create_commit(repo_id, operations(root, remote), repo_type="space",
                             commit_message="Deploy the GPT-from-scratch playground (tools/deploy_space.py)")
    return info.commit_url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.deploy_space", description=__doc__.split("\n")[0])
    parser.add_argument("repo_id", help="the Space, USER/NAME (created if it does not exist)")
    parser.add_argument("--dry-run", action="store_true", help="print what would go up; send nothing")
    parser.add_argument("--private", action="store_true", help="create the Space private")
    parser.add_argument("--var", action="append", default=[], metavar="KEY=VALUE",
                        help="a Space variable, e.g. GPT_APP_QUEUE_SIZE=16 (repeatable)")
    args = parser.parse_args(argv)
    variables = dict(v.split("=", 1) for v in args.var if "=" in v)
    if args.dry_run:
        files = space_files()
        size = sum((REPO / f).stat().st_size for f in files)
        print("\n".join(files))
        print(f"requirements.txt (made here)\n{len(files) + 1} files, {size / 2**20:.1f} MB\n")
        print(space_requirements(), end="")
        return 0
    print(deploy(args.repo_id, variables=variables, private=args.private))
    return 0


if __name__ == "__main__":
    sys.exit(main())
