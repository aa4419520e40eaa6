#!/usr/bin/env python3
"""Print a key of a YAML file: utils/yaml_get.py FILE KEY [DEFAULT].

KEY may be dotted (``encoder_conf.enrollment``) to reach into mappings.  Without a
DEFAULT a missing key is an error; a null value prints as ``none``, a mapping or a list as
JSON with sorted keys (so that two configs' values compare as strings).
"""
import json
import sys

import yaml

if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        value = yaml.safe_load(f) or {}
    for part in sys.argv[2].split("."):
        if not isinstance(value, dict) or part not in value:
            if len(sys.argv) == 3:
                sys.exit(f"yaml_get.py: {sys.argv[1]} has no key '{sys.argv[2]}'")
            print(sys.argv[3])
            sys.exit(0)
        value = value[part]
    if isinstance(value, (dict, list)):
        print(json.dumps(value, sort_keys=True))
    else:
        print("none" if value is None else value)
