"""Config keys, described once: `schema/` holds one module per config group (every key's type, valid values and
meaning); `validation` checks a composed config against it, `docs` writes docs/config.md and the README's table
from it, `renamed` names the new key of a key that moved."""
