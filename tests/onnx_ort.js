// onnx_ort.js - run an ONNX file in ONNX Runtime (npm onnxruntime-node, its CPU
// binaries) for test_onnx.py: node onnx_ort.js MODULES MODEL IN OUT N C H W
// reads N x C x H x W float32 (little-endian) from IN, writes the first output's
// float32 values to OUT and prints its dims.
'use strict';
const fs = require('fs');
const path = require('path');
const [modules, model, input, output, ...dims] = process.argv.slice(2);
const ort = require(path.join(modules, 'onnxruntime-node'));
(async () => {
  const shape = dims.map(Number);
  const buf = fs.readFileSync(input);
  const data = new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4);
  const session = await ort.InferenceSession.create(model, {executionProviders: ['cpu']});
  const result = await session.run({[session.inputNames[0]]: new ort.Tensor('float32', data, shape)});
  const out = result[session.outputNames[0]];
  fs.writeFileSync(output, Buffer.from(out.data.buffer, out.data.byteOffset, out.data.byteLength));
  console.log(out.dims.join(' '));
})().catch((e) => {
  console.error(`onnx_ort.js: ${e.message}`);
  process.exit(1);
});
