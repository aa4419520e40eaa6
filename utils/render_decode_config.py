#!/usr/bin/env python3
"""Fill in a decode config's per-set placeholders: utils/render_decode_config.py CONFIG OUTPUT KEY=VALUE...

A string value may name ``{test_set}`` and ``{ar_exp}`` (e.g. the first-pass hypotheses
that deliberation revises: ``deliberation_hyp: "{ar_exp}/decode_ar_beam10/{test_set}/text"``);
stage 6 writes, once per set, the config with them filled in.  The config is valid YAML
before and after: the placeholders live inside quoted strings, and are filled by value.
"""
import string
import sys

import yaml


def render(value, fields):
    if isinstance(value, str):
        names = {name for _, name, _, _ in string.Formatter().parse(value) if name}
        unknown = names - set(fields)
        if unknown:
            raise KeyError(f"unknown placeholder(s) {sorted(unknown)} in '{value}' (known: {sorted(fields)})")
        return value.format(**fields) if names else value
    if isinstance(value, dict):
        return {key: render(item, fields) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, fields) for item in value]
    return value


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    config, output = sys.argv[1], sys.argv[2]
    fields = dict(arg.split("=", 1) for arg in sys.argv[3:])
    try:
        with open(config, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
        rendered = render(data, fields)
    except (yaml.YAMLError, KeyError) as e:
        sys.exit(f"render_decode_config.py: {config}: {e}")
    with open(output, "w", encoding="utf-8") as f:
        f.write(f"# {config} as stage 6 used it ({', '.join(sys.argv[3:])})\n")
        yaml.safe_dump(rendered, f, sort_keys=False)
