"""Datasets in the formats trainers read: chat ``messages`` for SFT, TRL's preference format for DPO."""
