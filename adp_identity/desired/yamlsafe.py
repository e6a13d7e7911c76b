"""The strict YAML reader, as the desired-state loader knows it.

The reader itself lives in :mod:`adp_yaml`, shared with the emulator's seed loader, so that
there is one set of YAML rules in the project. Desired-state files always use the defaults: anchors and aliases
are refused, because service files come from pull requests.
"""

from adp_yaml import MAX_BYTES, MAX_DEPTH, YamlDocument, YamlRefused, parse_yaml, read_yaml

__all__ = ["MAX_BYTES", "MAX_DEPTH", "YamlDocument", "YamlRefused", "parse_yaml", "read_yaml"]
