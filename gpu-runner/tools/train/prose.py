"""Real prose for the episodes' filler (EPISODES.md, "Prose filler").

Training prose is collected at training time from documentation already on the machine -- READMEs and
docs inside node_modules, /usr/share/doc, and a sample of the man pages -- and never committed: only
this recipe, the seed and the manifest of what was read (paths, sizes, hashes) are. Files are split
into a train and a held-out part by the hash of their text, so held-out prose is never trained on.

The evaluation prose is a small committed set of MIT-licensed npm READMEs
(gpu-runner/eval/prose/heldout.jsonl, written by `prose.py make-eval`, licenses beside it); the
collector drops those packages by name and any file sharing lines with them, so training never sees it.

A document is a list of lines (`normalize`): UTF-8 text, newlines only, tabs as four spaces, no control
bytes, no trailing spaces, at most one blank line in a row, and no line over MAX_LINE bytes (long lines
are wrapped at the last space before the limit). Episodes draw consecutive lines from a random place of
a random document (episodes.prose_chunk); the TypeScript eval reads the same lines from the JSONL.

    /usr/bin/python3 prose.py collect [MANIFEST.tsv]   # collect, print a summary, write the manifest
    /usr/bin/python3 prose.py make-eval                # rewrite gpu-runner/eval/prose/ from node_modules
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
EVAL_DIR = os.path.join(ROOT, "gpu-runner", "eval", "prose")
EVAL_JSONL = os.path.join(EVAL_DIR, "heldout.jsonl")

MAX_LINE = 200  # bytes
MAX_FILE = 256 * 1024  # bytes of text read per file
MIN_LINES = 8  # shorter documents are dropped
HELDOUT_PER_MILLE = 100  # share of collected files kept out of training (by text hash)
MAN_PAGES = 300  # man pages rendered (every k-th of the sorted list)

# The committed evaluation prose: MIT-licensed READMEs of packages in the project's node_modules.
EVAL_PACKAGES = ("debug", "ws", "cookie", "json5", "madge", "cron-parser", "fs-extra", "path-to-regexp")

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def utf8len(s: str) -> int:
    return len(s.encode("utf-8"))


def _wrap(line: str) -> list[str]:
    """Split a line over MAX_LINE bytes at the last space before the limit (or at the limit's character)."""
    out = []
    while utf8len(line) > MAX_LINE:
        b = line.encode("utf-8")[:MAX_LINE].decode("utf-8", "ignore")
        cut = b.rfind(" ")
        if cut <= 0:
            cut = len(b)
            out.append(line[:cut])
            line = line[cut:]
        else:
            out.append(line[:cut])
            line = line[cut + 1:]
    out.append(line)
    return out


def normalize(text: str) -> list[str]:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "    ")
    text = _CONTROL.sub("", text)
    lines: list[str] = []
    for raw in text.split("\n"):
        raw = raw.rstrip()
        if raw == "" and (not lines or lines[-1] == ""):
            continue
        lines.extend(_wrap(raw))
    while lines and lines[-1] == "":
        lines.pop()
    return lines


@dataclass
class Doc:
    source: str
    lines: list[str]

    @property
    def sha(self) -> str:
        return hashlib.sha256("\n".join(self.lines).encode("utf-8")).hexdigest()


def _read_text(path: str) -> str | None:
    try:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as f:
            data = f.read(MAX_FILE)
        text = data.decode("utf-8", "ignore") if len(data) == MAX_FILE else data.decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError):
        return None
    if "\x00" in text:
        return None
    return text


def _render_man(path: str) -> str | None:
    try:
        with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
            src = f.read(MAX_FILE)
        r = subprocess.run(["groff", "-t", "-man", "-Tascii", "-P-cbou"], input=src, capture_output=True,
                           timeout=20)
    except (OSError, subprocess.TimeoutExpired, EOFError):
        return None
    if r.returncode != 0 or not r.stdout:
        return None
    lines = r.stdout.decode("ascii", "ignore").split("\n")
    # drop the running header and footer lines
    return "\n".join(lines[1:-2])


def _package_of(path: str) -> str | None:
    """The npm package a node_modules path belongs to (innermost), e.g. '@scope/name'."""
    parts = path.split("/")
    name = None
    for i, p in enumerate(parts):
        if p == "node_modules" and i + 1 < len(parts):
            name = parts[i + 1]
            if name.startswith("@") and i + 2 < len(parts):
                name = f"{name}/{parts[i + 2]}"
    return name


def candidate_files(root: str = ROOT) -> list[tuple[str, str]]:
    """(kind, path) of every file the recipe reads, sorted: markdown/text docs in node_modules,
    READMEs/markdown/text/rst under /usr/share/doc (not changelogs or copyright files, which repeat),
    and every k-th man page of sections 1, 5 and 8."""
    out: set[tuple[str, str]] = set()
    for p in glob.glob(os.path.join(root, "node_modules", "**", "*"), recursive=True):
        b = os.path.basename(p).lower()
        if os.path.isfile(p) and (b.endswith((".md", ".markdown", ".txt", ".rst")) or b.startswith("readme")) \
                and not b.startswith(("license", "licence", "copying", "notice", "third")):
            out.add(("npm", p))
    for p in glob.glob("/usr/share/doc/**/*", recursive=True):
        b = os.path.basename(p).lower()
        base = b[:-3] if b.endswith(".gz") else b
        if not os.path.isfile(p) or base.startswith(("changelog", "copyright", "license", "copying")):
            continue
        if base.startswith(("readme", "news", "faq", "usage")) or base.endswith((".md", ".txt", ".rst", ".markdown")):
            out.add(("doc", p))
    man = sorted(p for s in ("man1", "man5", "man8") for p in glob.glob(f"/usr/share/man/{s}/*")
                 if os.path.isfile(p))
    if man:
        step = max(1, len(man) // MAN_PAGES)
        out.update(("man", p) for p in man[::step][:MAN_PAGES])
    return sorted(out)


def load_eval() -> list[Doc]:
    """The committed evaluation prose (never trained on)."""
    docs = []
    with open(EVAL_JSONL, encoding="utf-8") as f:
        for line in f:
            o = json.loads(line)
            docs.append(Doc(o["source"], o["lines"]))
    return docs


def _line_keys(doc: Doc) -> set[str]:
    return {ln for ln in doc.lines if utf8len(ln) >= 40}


def collect(root: str = ROOT, log=lambda s: None) -> tuple[list[Doc], list[Doc], list[dict]]:
    """(train docs, held-out docs, manifest rows). Deduplicated by text; the evaluation packages and any
    file sharing more than 2% of its long lines (or 3 of them) with the evaluation prose are dropped."""
    eval_lines: set[str] = set()
    for d in load_eval():
        eval_lines |= _line_keys(d)
    seen: set[str] = set()
    train, held, manifest = [], [], []
    for kind, path in candidate_files(root):
        rel = os.path.relpath(path, root) if kind == "npm" else path
        row = {"kind": kind, "path": rel}
        if kind == "npm" and _package_of(path) in EVAL_PACKAGES:
            manifest.append({**row, "use": "excluded-eval-package"})
            continue
        text = _render_man(path) if kind == "man" else _read_text(path)
        if text is None:
            continue
        doc = Doc(rel, normalize(text))
        if len(doc.lines) < MIN_LINES:
            continue
        sha = doc.sha
        if sha in seen:
            continue
        seen.add(sha)
        keys = _line_keys(doc)
        shared = len(keys & eval_lines)
        row.update({"bytes": sum(utf8len(x) + 1 for x in doc.lines), "sha256": sha[:16]})
        if shared >= 3 or (keys and shared / len(keys) > 0.02):
            manifest.append({**row, "use": "excluded-overlaps-eval"})
            continue
        is_held = int(sha[:8], 16) % 1000 < HELDOUT_PER_MILLE
        (held if is_held else train).append(doc)
        manifest.append({**row, "use": "heldout" if is_held else "train"})
    log(f"prose: {len(train)} train / {len(held)} held-out documents "
        f"({sum(r.get('bytes', 0) for r in manifest if r['use'] == 'train') / 1e6:.1f} MB train)")
    return train, held, manifest


def manifest_digest(manifest: list[dict]) -> str:
    h = hashlib.sha256()
    for r in manifest:
        h.update(json.dumps(r, sort_keys=True).encode())
    return h.hexdigest()[:16]


def write_manifest(path: str, manifest: list[dict]):
    with open(path, "w") as f:
        f.write("use\tkind\tbytes\tsha256_16\tpath\n")
        for r in manifest:
            f.write(f"{r['use']}\t{r['kind']}\t{r.get('bytes', '')}\t{r.get('sha256', '')}\t{r['path']}\n")


def make_eval():
    """Writes gpu-runner/eval/prose/heldout.jsonl (one document per line: source, license, lines) and
    LICENSES.md (each package's license text) from the installed EVAL_PACKAGES."""
    os.makedirs(EVAL_DIR, exist_ok=True)
    rows, licenses = [], []
    for name in EVAL_PACKAGES:
        d = os.path.join(ROOT, "node_modules", name)
        with open(os.path.join(d, "package.json")) as f:
            pkg = json.load(f)
        assert pkg.get("license") == "MIT", (name, pkg.get("license"))
        readme = next(p for p in sorted(os.listdir(d)) if p.lower() in ("readme.md", "readme.markdown"))
        lic = next(p for p in sorted(os.listdir(d)) if p.lower().startswith(("license", "licence")))
        with open(os.path.join(d, readme), encoding="utf-8") as f:
            lines = normalize(f.read())
        rows.append({"source": f"npm:{name}@{pkg['version']}/{readme}", "license": "MIT", "lines": lines})
        with open(os.path.join(d, lic), encoding="utf-8") as f:
            licenses.append(f"## {name}@{pkg['version']} ({readme})\n\n```\n{f.read().strip()}\n```\n")
    with open(EVAL_JSONL, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    with open(os.path.join(EVAL_DIR, "LICENSES.md"), "w", encoding="utf-8") as f:
        f.write("# Licenses of the evaluation prose\n\n`heldout.jsonl` holds the READMEs of these npm packages, "
                "normalized into lines by gpu-runner/tools/train/prose.py (`make-eval`); each is MIT-licensed "
                "and its notice follows.\n\n" + "\n".join(licenses))
    print(f"wrote {EVAL_JSONL}: {len(rows)} documents, {sum(len(r['lines']) for r in rows)} lines")


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else "collect"
    if cmd == "make-eval":
        make_eval()
    elif cmd == "collect":
        tr, he, man = collect(log=print)
        print("manifest digest", manifest_digest(man))
        if len(sys.argv) > 2:
            write_manifest(sys.argv[2], man)
    else:
        raise SystemExit(f"unknown command {cmd!r} (collect | make-eval)")
