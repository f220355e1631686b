"""The ``lsdgraph`` subcommands, one module per group; ``lsdgraph.cli`` assembles them."""
