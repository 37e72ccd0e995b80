"""The `vq` command line: typer commands that call vq's service functions."""
