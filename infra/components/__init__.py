"""Component resources, one per concern of a service; ``Service`` composes them per service file.

Type tokens ``adp-identity:<module>:<Type>``; every child is named ``f"{name}-..."`` and parented to its component,
so aliases given to a component (``previous_names`` or ``opts.aliases``) carry all of its children across a rename.
"""
