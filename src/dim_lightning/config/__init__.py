"""Config keys, described once, and what a config becomes: `schema/` holds one module per config group (every
key's type, valid values and meaning); `validation` checks a composed config against it, `docs` writes
docs/config.md and the README's table from it, `renamed` names the new key of a key that moved; `builders`
turns a checked config into the run's objects; `resolvers` are the config tree's `${dim.*}` resolvers."""
