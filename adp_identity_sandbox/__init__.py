"""The sandbox: what runs the product against the emulator (the demo, the provider-host driver, the admin centre).

It is neither the product (``adp_identity``, ``providers``, ``infra`` never import it, except the CLI's ``demo``
command) nor the emulator (which imports nothing of the product or of this package). Tests and the benchmark use
it too.
"""
