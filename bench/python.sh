# python.sh (sourced by the bench scripts): PY, the Python that has PyTorch: $PYTHON when set, else the first
# python3 on PATH that imports torch (on a GPU machine that is a virtual environment's, not /usr/bin/python3),
# else /usr/bin/python3. PY_WHY says which and why.
if [ -n "${PYTHON:-}" ]; then
    PY=$PYTHON
    PY_WHY="\$PYTHON"
else
    PY=
    for p in $(command -v -a python3 2>/dev/null) /usr/bin/python3; do
        if [ -x "$p" ] && "$p" -c 'import torch' >/dev/null 2>&1; then
            PY=$p
            PY_WHY="the first python3 that imports torch"
            break
        fi
    done
    if [ -z "$PY" ]; then
        PY=/usr/bin/python3
        PY_WHY="no python3 on PATH imports torch"
    fi
fi
