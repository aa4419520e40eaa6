#!/usr/bin/env python3
"""Print one top-level key of a YAML file: utils/yaml_get.py FILE KEY [DEFAULT]."""
import sys

import yaml

if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        config = yaml.safe_load(f) or {}
    if sys.argv[2] not in config and len(sys.argv) == 3:
        sys.exit(f"yaml_get.py: {sys.argv[1]} has no key '{sys.argv[2]}'")
    print(config.get(sys.argv[2], sys.argv[-1]))
