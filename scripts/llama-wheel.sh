#!/usr/bin/env bash
# Builds (once per machine) the llama-cpp-python wheel llmrec installs, into a wheel folder.
#
# On a CPU that reports AMX, llama.cpp's default -march=native build enables its AMX kernels,
# which crash the first decode with a segmentation fault inside VMs that do not enable AMX tile
# state (seen on this project's machines). There the wheel is built without AMX but with the
# AVX-512 family every AMX-capable CPU has. Elsewhere the default native build is used.
# pip's own wheel cache cannot tell the two builds apart, so the wheel lives in its own folder.
set -euo pipefail
python=$1
wheels=$2
version=${LLAMA_CPP_VERSION:-0.3.36}
if ls "$wheels"/llama_cpp_python-"$version"-*.whl >/dev/null 2>&1; then
  exit 0
fi
mkdir -p "$wheels"
if grep -qw amx_tile /proc/cpuinfo 2>/dev/null; then
  export CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
-DGGML_BMI2=ON -DGGML_AVX_VNNI=ON -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON \
-DGGML_AVX512_BF16=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
  echo "building llama-cpp-python $version without AMX (about 10 minutes on 2 cores)"
else
  echo "building llama-cpp-python $version (about 10 minutes on 2 cores)"
fi
"$python" -m pip wheel -q --no-deps --no-cache-dir -w "$wheels" "llama-cpp-python==$version"
