"""Test utilities shipped with mlpc: a FileCheck-style matcher and lit-style RUN lines."""
