"""The Pulumi program under mocks: both real stacks, tree edits, components."""
