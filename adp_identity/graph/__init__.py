"""``adp-identity graph``: who can reach what. `model` builds the graph (from the service files or from what the
environments hold); `mermaid`, `svg` and `dot` draw it. Pure Python: no Pulumi, no Graphviz, no browser."""
