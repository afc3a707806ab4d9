"""Dockerfile front end without root: parsing, words and substitution, .dockerignore, metadata."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.build.config import apply_metadata, parse_duration
from engine.build.context import SourceTree, content_hash
from engine.build.dockerfile import Instruction, parse_dockerfile
from engine.build.ignore import IgnoreRules
from engine.build.words import process_word, split_words
from engine.errors import InvalidSpec


def test_stages_global_args_continuations_and_comments() -> None:
    df = parse_dockerfile(
        "# a comment\nARG BASE=busybox\nFROM ${BASE} AS Build\nRUN echo a \\\n  && echo b\n"
        "# between\nFROM build\nCOPY --from=build --chown=1:2 /a /b\n"
    )
    assert [a.args for a in df.global_args] == [("BASE=busybox",)]
    assert [(s.index, s.name, s.base) for s in df.stages] == [(0, "build", "${BASE}"), (1, None, "build")]
    run = df.stages[0].instructions[0]
    assert (run.name, run.line, run.args) == ("RUN", 4, ("echo a   && echo b",))
    copy = df.stages[1].instructions[0]
    assert copy.flags == {"from": "build", "chown": "1:2"} and copy.line == 8
    assert df.stage("build") is df.stages[0] and df.stage("1") is df.stages[1] and df.stage("x") is None


def test_escape_directive_changes_the_continuation_character() -> None:
    df = parse_dockerfile("# escape=`\nFROM busybox\nRUN echo a `\n  b\nCOPY a\\b c\\d /\n")
    assert df.escape == "`"
    assert df.stages[0].instructions[0].args == ("echo a   b",)
    assert df.stages[0].instructions[1].args == ("a\\b", "c\\d", "/")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"no instructions"),
        ("# only a comment\nARG A=1\n", r"has no FROM instruction"),
        ("FROM busybox\nFROOB x\n", r"line 2: unknown instruction FROOB"),
        ("FROM busybox\nONBUILD RUN x\n", r"line 2: unknown instruction ONBUILD \(ONBUILD triggers"),
        ("COPY a b\nFROM busybox\n", r"line 1: COPY: only ARG may come before the first FROM"),
        ("FROM busybox\nCOPY a\n", r"line 2: COPY: needs a source and a destination"),
        ("FROM busybox\nCOPY --frm=x a b\n", r"line 2: COPY: unsupported flag --frm"),
        ("FROM busybox\nCOPY --from a b\n", r"line 2: COPY: flag --from needs a value"),
        ("FROM busybox\nSHELL /bin/sh -c\n", r"line 2: SHELL: needs the JSON form"),
        ("FROM busybox\nHEALTHCHECK echo\n", r"line 2: HEALTHCHECK: expects CMD"),
        ("FROM a AS x\nFROM b AS x\n", r"line 2: FROM: stage name 'x' is used twice"),
        ("FROM a AS 1x\n", r"line 1: FROM: invalid stage name"),
        ("FROM a b\n", r"line 1: FROM: expects FROM IMAGE \[AS NAME\]"),
        ("FROM busybox\nRUN <<EOF\necho\nEOF\n", r"line 2: RUN: heredocs"),
        ("# escape=x\nFROM busybox\n", r"syntax error: invalid escape token"),
    ],
)
def test_bad_dockerfiles_name_the_line(text: str, message: str) -> None:
    with pytest.raises(InvalidSpec, match=message):
        parse_dockerfile(text)


def test_words_quotes_escapes_and_substitution() -> None:
    env = {"A": "x y", "EMPTY": ""}
    assert process_word("\"$A\" and '$A'", env) == "x y and $A"
    assert process_word("${A}-${MISSING:-dflt}-${A:+alt}-${EMPTY:+no}", env) == "x y-dflt-alt-"
    assert process_word("\\$A cost $", env) == "$A cost $"
    assert process_word("a`$A", env, escape="`") == "a$A"
    assert split_words('80/tcp "a b" c\\ d', env) == ["80/tcp", "a b", "c d"]
    with pytest.raises(InvalidSpec, match="unmatched"):
        process_word('"open', env)
    with pytest.raises(InvalidSpec, match="bad substitution"):
        process_word("${A/x/y}", env)


def test_dockerignore_rules_like_docker() -> None:
    rules = IgnoreRules.from_text(
        "# comment\n\n*.env\n/build\nlogs\n!logs/keep.log\n**/*.tmp\ndocs/**/draft-?.md\n[ab].txt\n./x/../y\n"
    )
    excluded = [
        "a.env",
        "build",
        "build/out.o",
        "logs/a.log",
        "deep/er/x.tmp",
        "x.tmp",
        "docs/one/two/draft-1.md",
        "docs/draft-2.md",
        "a.txt",
        "y",
    ]
    included = ["sub/a.env", "src/build", "logs/keep.log", "docs/one/final.md", "c.txt", "keep.txt"]
    assert [p for p in excluded if not rules.excluded(p)] == []
    assert [p for p in included if rules.excluded(p)] == []
    assert rules.has_exceptions


def test_source_tree_refuses_escapes_and_exclusions(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "logs").mkdir(parents=True)
    (ctx / "app.py").write_text("print(1)\n")
    (ctx / "secret.env").write_text("x")
    (ctx / "logs" / "keep.log").write_text("k")
    (ctx / "logs" / "drop.log").write_text("d")
    (ctx / "link").symlink_to("/etc")
    tree = SourceTree(ctx, IgnoreRules.from_text("*.env\nlogs\n!logs/keep.log\n"), beneath=True)
    with pytest.raises(InvalidSpec, match=r"'../x' is outside the build context"):
        tree.resolve(["../x"], "COPY")
    with pytest.raises(InvalidSpec, match=r"'secret.env' matches no file .*excluded by .dockerignore"):
        tree.resolve(["secret.env"], "COPY")
    with pytest.raises(InvalidSpec, match="leads out of the build context"):
        tree.resolve(["link/passwd"], "COPY")  # a symlink never leads out of the context
    (logs,) = tree.resolve(["logs"], "COPY")
    assert [e.rel for e in logs.entries] == ["", "keep.log"]
    (everything,) = tree.resolve(["."], "COPY")
    assert [e.rel for e in everything.entries] == ["", "app.py", "link", "logs", "logs/keep.log"]
    assert [s.name for s in tree.resolve(["*.py", "lo*"], "COPY")] == ["app.py", "logs"]
    before = content_hash([everything])
    (ctx / "app.py").chmod(0o600)
    assert content_hash(tree.resolve(["."], "COPY")) != before
    (ctx / "logs" / "drop.log").write_text("changed but excluded")
    after_mode = content_hash(tree.resolve(["."], "COPY"))
    assert content_hash(tree.resolve(["."], "COPY")) == after_mode


def _inst(name: str, *args: str, json: bool = False, **flags: str) -> Instruction:
    return Instruction(name, 3, args, dict(flags), json, f"{name} {' '.join(args)}")


def test_metadata_instructions_shape_the_config() -> None:
    config: dict[str, object] = {"Env": ["PATH=/bin"], "Cmd": ["sh"]}
    env = {"V": "1.2"}
    apply_metadata(config, _inst("ENV", "APP", "/opt/app", "MSG", '"hi $V"'), env, "\\", cmd_set=False)
    apply_metadata(config, _inst("WORKDIR", "$APP"), env, "\\", cmd_set=False)
    apply_metadata(config, _inst("WORKDIR", "sub"), env, "\\", cmd_set=False)
    apply_metadata(config, _inst("LABEL", "version", "$V"), env, "\\", cmd_set=False)
    apply_metadata(config, _inst("EXPOSE", "80", "53/UDP", "9000-9001"), env, "\\", cmd_set=False)
    apply_metadata(config, _inst("ENTRYPOINT", "run", "--fast"), env, "\\", cmd_set=False)
    apply_metadata(config, _inst("STOPSIGNAL", "SIGQUIT"), env, "\\", cmd_set=False)
    hc = _inst("HEALTHCHECK", "CMD", "wget", "-q", "x", json=True, interval="1m30s", timeout="500ms")
    apply_metadata(config, hc, env, "\\", cmd_set=False)
    assert config["Env"] == ["PATH=/bin", "APP=/opt/app", "MSG=hi 1.2"]
    assert config["WorkingDir"] == "/opt/app/sub"
    assert config["Labels"] == {"version": "1.2"}
    assert config["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}, "9000-9001/tcp": {}}
    assert (
        config["Entrypoint"] == ["/bin/sh", "-c", "run --fast"] and "Cmd" not in config
    )  # inherited CMD reset
    assert config["Healthcheck"] == {
        "Test": ["CMD", "wget", "-q", "x"],
        "Interval": 90 * 10**9,
        "Timeout": 500 * 10**6,
    }
    with pytest.raises(InvalidSpec, match="line 3: STOPSIGNAL: unknown signal"):
        apply_metadata(config, _inst("STOPSIGNAL", "SIGNOPE"), env, "\\", cmd_set=False)
    with pytest.raises(InvalidSpec, match="line 3: VOLUME: volume path 'data' must be absolute"):
        apply_metadata(config, _inst("VOLUME", "data"), env, "\\", cmd_set=False)
    with pytest.raises(InvalidSpec, match="invalid duration"):
        parse_duration("5 minutes", hc)
