"""Compares Bazaar's FileDescriptorSet with protoc's for the same files.

Usage: descriptor_compare.py OURS.pb THEIRS.pb
protoc adds nothing we leave out on purpose except source_code_info, which is cleared on both
sides. Options are compared after parsing, so field order inside option messages does not matter.
"""
import sys
from google.protobuf import descriptor_pb2


def load(path):
    s = descriptor_pb2.FileDescriptorSet()
    with open(path, "rb") as f:
        s.ParseFromString(f.read())
    out = {}
    for fd in s.file:
        fd.ClearField("source_code_info")
        out[fd.name] = fd
    return out


def main():
    ours, theirs = load(sys.argv[1]), load(sys.argv[2])
    bad = 0
    for name, t in sorted(theirs.items()):
        o = ours.get(name)
        if o is None:
            print(f"MISSING {name}")
            bad += 1
            continue
        if o != t:
            bad += 1
            print(f"DIFF {name}")
            import difflib
            a = str(t).splitlines()
            b = str(o).splitlines()
            for line in list(difflib.unified_diff(a, b, "protoc", "bazaar", lineterm="", n=2))[:60]:
                print("   ", line)
    print(f"{len(theirs) - bad} equal, {bad} different")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
