"""LightningDataModules. Images stay uint8 until they are on the device; see `transforms`."""
