"""What a run is asked to do: matrix.toml's backends, servers, variants, scenarios and
parameters, read and checked; a target's file and the settings shim it runs with; make params."""
