#!/usr/bin/env bash
# Rebuild weights/glass.safetensors: see rebuild_style.sh (RECIPE=gpu for the larger recipe).
exec bash "$(dirname "$0")/rebuild_style.sh" glass "$@"
