"""AST helpers shared by the tests that read the code (test_artifact.py, test_cli.py)."""

from __future__ import annotations

import ast


def docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring constants of a module and its classes and functions."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found
