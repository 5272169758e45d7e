#!/usr/bin/env bash
# Rebuild weights/swirls.safetensors: see rebuild_style.sh (RECIPE=gpu for the larger recipe).
exec bash "$(dirname "$0")/rebuild_style.sh" swirls "$@"
