#!/usr/bin/env python3
"""Fails when docs or source comments name a file of this repository that does not exist.

Reads every tracked file: whole Markdown files, and the comments of C++, CUDA, CMake, Python and
shell files (#include lines and code are the compiler's business). A reference is
  - a path starting with a top-level folder of the tree (merger/daemon/server.h, docs/protocol.md,
    tests/package/), checked from the repository root;
  - a public header's installed name (wsm/merger/provenance.h), checked under <folder>/include/;
  - a relative path (../package.cmake, or a Markdown link), checked from the file's folder;
  - a bare file name with a source or doc extension (merge.h, method-guide.md), which must exist
    somewhere in the tree.
Paths with placeholders (<part>, *, {}) and files named in EXTERNAL (the user's or generated ones)
are skipped. Prints each dangling reference as file:line: path, and exits 1 if there is one.
Usage: check-paths.py [REPO_ROOT]
"""
import os
import re
import subprocess
import sys

EXTENSIONS = r"(?:h|hpp|cpp|cu|cuh|md|py|sh|cmake|proto|in|txt)"
# Named in docs and comments but not part of the tree: the user's scripts, generated or build files.
EXTERNAL = {
    "eval.py", "train.py", "wsm.pb.h", "wsm.pb.cc", "wsm_pb2.py", "CMakeLists.txt", "pyproject.toml",
    "requirements.txt", "setup.py", "compile_commands.json", "my_eval.py", "score.py", "CMakeCache.txt",
    "report.md", "wsmConfig.cmake", "dnnl.h", "xxh_x86dispatch.h", "trend.md",
    "blobs", "run",  # a Hugging Face hub cache's ../../blobs/; `wsm train --out ./run/`
}
SKIP_PREFIXES = ("build", "data/", "/")

PATH_TOKEN = re.compile(r"(?<![\w./<>{}$@:-])((?:\.\.?/)*[A-Za-z0-9_][\w.+-]*(?:/[\w.+-]+)*/?)")
MD_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def tracked_files(root):
    out = subprocess.run(["git", "-C", root, "ls-files"], check=True, capture_output=True, text=True)
    return [f for f in out.stdout.splitlines() if os.path.isfile(os.path.join(root, f))]


def comment_lines(path, text):
    """(line number, comment text) for each line holding a comment."""
    ext = os.path.splitext(path)[1]
    cxx = ext in (".h", ".hpp", ".cpp", ".cu", ".cuh", ".proto")
    hashy = ext in (".py", ".sh", ".cmake", ".in") or os.path.basename(path) == "CMakeLists.txt"
    in_block = False
    for number, line in enumerate(text.splitlines(), 1):
        if cxx:
            if line.lstrip().startswith("#include"):
                continue
            if in_block:
                end = line.find("*/")
                yield number, line if end < 0 else line[:end]
                in_block = end < 0
                continue
            at = line.find("//")
            block = line.find("/*")
            if block >= 0 and (at < 0 or block < at):
                in_block = "*/" not in line[block:]
                yield number, line[block:]
            elif at >= 0:
                yield number, line[at:]
        elif hashy:
            at = line.find("#")
            if at >= 0:
                yield number, line[at:]


def candidates(text):
    for match in MD_LINK.finditer(text):
        yield match.group(1), True
    for match in PATH_TOKEN.finditer(text):
        yield match.group(1).rstrip(".,:;"), False


class Tree:
    def __init__(self, root):
        self.root = root
        self.files = tracked_files(root)
        self.names = {os.path.basename(f) for f in self.files}
        self.dirs = {os.path.dirname(f) for f in self.files}
        self.dirs |= {d.rsplit("/", i)[0] for d in self.dirs for i in range(1, d.count("/") + 1)}
        self.top = {f.split("/", 1)[0] for f in self.files if "/" in f}
        self.public = {f.split("/include/", 1)[1] for f in self.files if "/include/wsm/" in f}

    def exists(self, rel):
        rel = os.path.normpath(rel)
        return rel in self.dirs or os.path.isfile(os.path.join(self.root, rel))

    def dangling(self, source, token, is_link):
        """True when token looks like a reference to this tree and names nothing in it."""
        plain = token[2:] if token.startswith("./") else token
        if any(c in token for c in "<>*{}$%") or plain.startswith(SKIP_PREFIXES) or "://" in token:
            return False
        base = os.path.basename(token.rstrip("/"))
        if base in EXTERNAL or base.startswith("x."):  # x.h: a placeholder name
            return False
        here = os.path.dirname(source)
        if is_link:
            return not token.startswith(("http", "mailto")) and not self.exists(os.path.join(here, token))
        if token.startswith(("./", "../")):  # from the file's folder, or the root in a command line
            return not self.exists(os.path.join(here, token)) and not self.exists(token)
        if "/" in token:
            first = token.split("/", 1)[0]
            if token.startswith("wsm/"):
                return token.count("/") >= 2 and token.endswith(".h") and token not in self.public
            if first not in self.top or not re.search(r"\." + EXTENSIONS + r"$|/$", token):
                return False
            return not self.exists(token) and not self.exists(os.path.join(here, token))
        if re.fullmatch(r"[\w+-]+\." + EXTENSIONS, token) and not token.endswith(".txt"):
            return token not in self.names
        return False


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), ".."))
    tree = Tree(root)
    bad = []
    for source in tree.files:
        if source.startswith(("tests/protocol/fuzz_seeds/",)) or source == "tools/check-paths.py":
            continue
        try:
            with open(os.path.join(root, source), encoding="utf-8") as f:
                text = f.read()
        except (UnicodeDecodeError, OSError):
            continue
        if source.endswith(".md"):
            lines = enumerate(text.splitlines(), 1)
        else:
            lines = comment_lines(source, text)
        for number, line in lines:
            for token, is_link in candidates(line):
                if tree.dangling(source, token, is_link):
                    bad.append(f"{source}:{number}: {token}")
    for line in bad:
        print(line)
    print(f"check-paths: {len(bad)} dangling reference(s) in {len(tree.files)} files")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
