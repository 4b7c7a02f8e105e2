"""`make api-check` against a corpus of .proto edits, each with its verdict, and `buf breaking`
(PyPI buf-bin) on the same edits: both tools agree on every edit buf can judge; the edits to
options only Bazaar reads (HTTP bindings, field rules) are breaking for Bazaar and, as their
cases say, invisible to buf. Each edit is written as changes to one base file, below."""
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CODEGEN = os.environ.get("BAZAAR_CODEGEN", str(ROOT / ".build" / "debug" / "bazaar-codegen"))
# What the corpus may import from the repository.
SHARED = ["google/api/annotations.proto", "google/api/http.proto", "bazaar/options/v1/options.proto"]

BASE = """syntax = "proto3";
package corpus.v1;
{imports}
message Item {{
  string id = 1;
  string name = 2;
  int64 quantity = 3;
  repeated string tags = 4;
  Kind kind = 5;
}}

enum Kind {{
  KIND_UNSPECIFIED = 0;
  KIND_BOOK = 1;
  KIND_GAME = 2;
}}

message GetItemRequest {{ string id = 1; }}
message ListItemsRequest {{ int32 page_size = 1; }}
message ListItemsResponse {{ repeated Item items = 1; }}

service ItemService {{
  rpc GetItem(GetItemRequest) returns (Item){get_opts}
  rpc ListItems(ListItemsRequest) returns (ListItemsResponse);
  rpc WatchItem(GetItemRequest) returns (stream Item);
}}
"""
IMPORTS = 'import "google/api/annotations.proto";\nimport "bazaar/options/v1/options.proto";'
PLAIN = BASE.format(imports="", get_opts=";")
WITH_IMPORTS = BASE.format(imports=IMPORTS, get_opts=";")
WITH_HTTP = BASE.format(imports=IMPORTS, get_opts=' {\n    option (google.api.http) = { get: "/v1/items/{id}" };\n  }')
RULED = WITH_HTTP.replace("string name = 2;", "string name = 2 [(bazaar.options.v1.rules) = {required: true, max_len: 100}];")
EXTRA = 'syntax = "proto3";\npackage corpus.v1;\nmessage Extra { string x = 1; }\n'


def edit(text, *pairs):
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def option(text, line):
    return edit(text, ("package corpus.v1;\n", f"package corpus.v1;\n{line}\n"))


# (name, our verdict, buf's verdict, old files, new files): files as {path: text}.
CASES = [
    # Breaking for both tools.
    ("field-removed", "breaking", "breaking", PLAIN, edit(PLAIN, ("  int64 quantity = 3;\n", ""))),
    ("field-renumbered", "breaking", "breaking", PLAIN, edit(PLAIN, ("quantity = 3;", "quantity = 6;"))),
    ("field-type-changed", "breaking", "breaking", PLAIN, edit(PLAIN, ("int64 quantity", "int32 quantity"))),
    ("field-renamed", "breaking", "breaking", PLAIN, edit(PLAIN, ("string name = 2;", "string title = 2;"))),
    ("field-made-repeated", "breaking", "breaking", PLAIN, edit(PLAIN, ("string name = 2;", "repeated string name = 2;"))),
    ("message-removed", "breaking", "breaking", PLAIN + "message Unused { string x = 1; }\n", PLAIN),
    ("method-removed", "breaking", "breaking", PLAIN,
     edit(PLAIN, ("  rpc ListItems(ListItemsRequest) returns (ListItemsResponse);\n", ""))),
    ("service-removed", "breaking", "breaking",
     PLAIN + "service Other { rpc Ping(GetItemRequest) returns (GetItemRequest); }\n", PLAIN),
    ("response-type-changed", "breaking", "breaking", PLAIN,
     edit(PLAIN, ("returns (ListItemsResponse);", "returns (Item);"))),
    ("request-type-changed", "breaking", "breaking", PLAIN,
     edit(PLAIN, ("rpc WatchItem(GetItemRequest)", "rpc WatchItem(ListItemsRequest)"))),
    ("streaming-changed", "breaking", "breaking", PLAIN, edit(PLAIN, ("returns (stream Item);", "returns (Item);"))),
    ("enum-value-removed", "breaking", "breaking", PLAIN, edit(PLAIN, ("  KIND_GAME = 2;\n", ""))),
    ("enum-value-renamed", "breaking", "breaking", PLAIN, edit(PLAIN, ("KIND_GAME = 2;", "KIND_VIDEO_GAME = 2;"))),
    ("package-changed", "breaking", "breaking", PLAIN, edit(PLAIN, ("package corpus.v1;", "package corpus.v2;"))),
    ("field-moved-into-oneof", "breaking", "breaking", PLAIN,
     edit(PLAIN, ("  string name = 2;\n", "  oneof label {\n    string name = 2;\n  }\n"))),
    ("json-name-changed", "breaking", "breaking", PLAIN,
     edit(PLAIN, ("string name = 2;", 'string name = 2 [json_name = "label"];'))),
    ("reserved-range-removed", "breaking", "breaking",
     edit(PLAIN, ("  Kind kind = 5;\n", "  Kind kind = 5;\n  reserved 9 to 11;\n")), PLAIN),
    ("file-removed", "breaking", "breaking", {"corpus.proto": PLAIN, "extra.proto": EXTRA}, PLAIN),
    ("java-package-changed", "breaking", "breaking", option(PLAIN, 'option java_package = "com.corpus.v1";'),
     option(PLAIN, 'option java_package = "com.corpus.v2";')),
    # Compatible for both.
    ("field-added", "compatible", "compatible", PLAIN,
     edit(PLAIN, ("  Kind kind = 5;\n", "  Kind kind = 5;\n  string note = 6;\n"))),
    ("method-added", "compatible", "compatible", PLAIN,
     edit(PLAIN, ("  rpc WatchItem", "  rpc CountItems(ListItemsRequest) returns (ListItemsResponse);\n  rpc WatchItem"))),
    ("enum-value-added", "compatible", "compatible", PLAIN,
     edit(PLAIN, ("  KIND_GAME = 2;\n", "  KIND_GAME = 2;\n  KIND_FILM = 3;\n"))),
    ("comments-changed", "compatible", "compatible", PLAIN,
     edit(PLAIN, ("message Item {", "// An item for sale.\nmessage Item {"), ("  string id = 1;\n", "  // Its id.\n  string id = 1;\n"))),
    ("message-added", "compatible", "compatible", PLAIN, PLAIN + "message Extra { string x = 1; }\n"),
    ("reserved-range-added", "compatible", "compatible", PLAIN,
     edit(PLAIN, ("  Kind kind = 5;\n", "  Kind kind = 5;\n  reserved 9 to 11;\n"))),
    ("file-deprecated", "compatible", "compatible", PLAIN, option(PLAIN, "option deprecated = true;")),
    ("default-option-made-explicit", "compatible", "compatible", PLAIN, option(PLAIN, "option java_multiple_files = false;")),
    ("http-binding-added", "compatible", "compatible", WITH_IMPORTS, WITH_HTTP),
    ("new-optional-field-with-rules", "compatible", "compatible", WITH_IMPORTS,
     edit(WITH_IMPORTS, ("  Kind kind = 5;\n", "  Kind kind = 5;\n  string owner = 6 [(bazaar.options.v1.rules) = {max_len: 64}];\n"))),
    # Tightened rules: a warning only (old clients' requests may now be refused).
    ("rules-tightened", "compatible", "compatible", RULED, edit(RULED, ("max_len: 100", "max_len: 50"))),
    # Bazaar's own rules, about options buf does not read.
    ("http-binding-changed", "breaking", "compatible", WITH_HTTP, edit(WITH_HTTP, ("/v1/items/{id}", "/v1/things/{id}"))),
    ("http-binding-removed", "breaking", "compatible", WITH_HTTP, WITH_IMPORTS),
    ("rules-weakened", "breaking", "compatible", RULED, edit(RULED, ("max_len: 100", "max_len: 200"))),
    ("rule-removed", "breaking", "compatible", RULED, WITH_HTTP),
    ("new-required-field", "breaking", "compatible", WITH_IMPORTS,
     edit(WITH_IMPORTS, ("  Kind kind = 5;\n", "  Kind kind = 5;\n  string owner = 6 [(bazaar.options.v1.rules) = {required: true}];\n"))),
]


def write(files, d, shared=False):
    files = files if isinstance(files, dict) else {"corpus.proto": files}
    d.mkdir(parents=True)
    for path, text in files.items():
        (d / path).write_text(text)
    if shared:
        for f in SHARED:
            (d / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / "proto" / f, d / f)
    return d


def api_check(old, new, tmp):
    """Our verdict and output: the new files against the old ones."""
    out = subprocess.run([CODEGEN, "-I", str(write(new, tmp / "ours-new")), "-I", str(ROOT / "proto"), "-I", "/usr/include",
                          "--against", str(write(old, tmp / "ours-old"))], capture_output=True, text=True, timeout=60)
    assert out.returncode in (0, 1), out.stderr
    return ("breaking" if out.returncode == 1 else "compatible"), out.stdout


def buf_breaking(old, new, tmp):
    """buf's verdict on the same edit (its default rules: the FILE category)."""
    buf = shutil.which("buf", path=str(pathlib.Path(sys.executable).parent))
    assert buf, "buf is missing: scripts/requirements-test.txt installs buf-bin into .venv"
    out = subprocess.run([buf, "breaking", str(write(new, tmp / "buf-new", shared=True)),
                          "--against", str(write(old, tmp / "buf-old", shared=True))],
                         capture_output=True, text=True, timeout=120, cwd=tmp)
    # 0: nothing breaking; 100: breaking changes found; anything else is buf failing to run.
    assert out.returncode in (0, 100), out.stdout + out.stderr
    return ("breaking" if out.returncode == 100 else "compatible"), out.stdout


def test_the_corpus_covers_both_verdicts_and_bazaars_own_rules():
    verdicts = [(c[1], c[2]) for c in CASES]
    assert len(verdicts) >= 30
    assert verdicts.count(("breaking", "breaking")) >= 15
    assert verdicts.count(("compatible", "compatible")) >= 8
    assert sum(ours != theirs for ours, theirs in verdicts) >= 4


@pytest.mark.parametrize("name,ours_expected,buf_expected,old,new", CASES, ids=[c[0] for c in CASES])
def test_each_edit_gets_its_verdict_from_both_tools(name, ours_expected, buf_expected, old, new, tmp_path):
    ours, report = api_check(old, new, tmp_path)
    assert ours == ours_expected, report
    theirs, buf_report = buf_breaking(old, new, tmp_path)
    assert theirs == buf_expected, buf_report
    if ours == "breaking":
        # Every finding names a position, the rule and what changed.
        findings = [l for l in report.splitlines() if ": breaking: " in l]
        assert findings and all(l.startswith(("corpus.proto:", "extra.proto:")) and "[" in l for l in findings)


def test_tightened_rules_are_a_warning_only(tmp_path):
    verdict, report = api_check(RULED, edit(RULED, ("max_len: 100", "max_len: 50")), tmp_path)
    assert verdict == "compatible" and "warning: " in report and "max_len lowered from 100 to 50" in report


def test_the_repositorys_api_against_itself_is_compatible():
    out = subprocess.run([CODEGEN, "-I", str(ROOT / "proto"), "-I", "/usr/include", "--against", str(ROOT / "proto")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "no breaking change" in out.stdout, out.stdout + out.stderr


def test_bad_arguments_get_a_clear_error(tmp_path):
    out = subprocess.run([CODEGEN, "-I", str(ROOT / "proto"), "--against", str(tmp_path / "missing")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "not a readable directory" in out.stderr
