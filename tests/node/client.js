// A SpeedData client in Node.js that knows nothing but proto/speeddata/v1/*.proto.
//
//   node client.js ADDRESS PROTO_DIR SCHEMA_FILE UDP_PORT
//
// It registers a channel, says READY on stdout once its subscription is open, collects
// RECORDS live records (the test sends them), queries them back, and prints one JSON line
// with what it decoded from the columnar batches.
"use strict";
const fs = require("fs");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const [address, protoDir, schemaFile, udpPort] = process.argv.slice(2);
const RECORDS = 500;

const definition = protoLoader.loadSync("speeddata/v1/speeddata.proto", {
  includeDirs: [protoDir], keepCase: true, longs: String, enums: String, defaults: true,
});
const v1 = grpc.loadPackageDefinition(definition).speeddata.v1;
const client = new v1.SpeedData(address, grpc.credentials.createInsecure());

function call(method, request) {
  return new Promise((resolve, reject) =>
    client[method](request, (err, reply) => (err ? reject(err) : resolve(reply))));
}

// One column of a Batch, decoded as the .proto documents it.
function decodeColumn(column, rows) {
  const v = column.values;
  const valid = (i) => column.validity.length === 0 || (column.validity[i >> 3] >> (i & 7)) & 1;
  const out = [];
  for (let i = 0; i < rows; i++) {
    if (!valid(i)) { out.push(null); continue; }
    switch (column.type) {
      case "DATA_TYPE_BOOL": out.push(v[i] !== 0); break;
      case "DATA_TYPE_INT32": out.push(v.readInt32LE(4 * i)); break;
      case "DATA_TYPE_INT64": out.push(v.readBigInt64LE(8 * i).toString()); break;
      case "DATA_TYPE_FLOAT32": out.push(v.readFloatLE(4 * i)); break;
      case "DATA_TYPE_FLOAT64": out.push(v.readDoubleLE(8 * i)); break;
      case "DATA_TYPE_STRING": {
        const o = column.offsets;
        out.push(v.toString("utf8", o.readUInt32LE(4 * i), o.readUInt32LE(4 * (i + 1))));
        break;
      }
      default: throw new Error(`unexpected column type ${column.type}`);
    }
  }
  return out;
}

function decodeBatch(batch, into) {
  for (let i = 0; i < batch.rows; i++) {
    (into.time = into.time || []).push(batch.time.readBigInt64LE(8 * i).toString());
  }
  for (const column of batch.columns) {
    const key = column.aggregate === "AGGREGATE_VALUE" ? column.name
      : `${column.name}:${column.aggregate.slice("AGGREGATE_".length).toLowerCase()}`;
    into[key] = (into[key] || []).concat(decodeColumn(column, batch.rows));
  }
  return into;
}

async function main() {
  const ports = await call("ListAvailablePorts", { limit: 5 });
  const info = await call("RegisterChannel", {
    name: "node", port: Number(udpPort), schema: fs.readFileSync(schemaFile, "utf8"),
  });
  for (let i = 0; i < 200; i++) {
    const ch = await call("GetChannel", { name: "node" });
    if (ch.status === "CHANNEL_STATUS_RUNNING") break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const schema = await call("GetSchema", { name: "node" });

  const live = {};
  let rows = 0;
  const stream = client.Subscribe({ channels: [{
    channel: "node", signals: ["counter", "sine_wave", "message"] }] });
  const subscribed = new Promise((resolve, reject) => {
    stream.on("data", (response) => {
      decodeBatch(response.batch, live);
      rows += response.batch.rows;
      if (rows >= RECORDS) { stream.cancel(); resolve(); }
    });
    stream.on("error", (err) => (err.code === grpc.status.CANCELLED ? resolve() : reject(err)));
  });
  await new Promise((r) => setTimeout(r, 500));   // the stream is open at the server
  console.log("READY");
  await subscribed;

  const stored = {};
  for (let i = 0; i < 100 && (stored.time || []).length < RECORDS; i++) {
    for (const k of Object.keys(stored)) delete stored[k];
    await new Promise((resolve, reject) => {
      const q = client.Query({ channels: ["node"], signals: ["counter", "noise"], max_rows: 128 });
      q.on("data", (response) => decodeBatch(response.batch, stored));
      q.on("end", resolve);
      q.on("error", reject);
    });
    await new Promise((r) => setTimeout(r, 100));
  }
  const envelope = {};
  await new Promise((resolve, reject) => {
    const q = client.Query({ channels: ["node"], signals: ["sine_wave"], buckets: 5 });
    q.on("data", (response) => decodeBatch(response.batch, envelope));
    q.on("end", resolve);
    q.on("error", reject);
  });
  let notFound = null;
  try { await call("GetChannel", { name: "no-such-channel" }); }
  catch (err) { notFound = { code: err.code, details: err.details }; }

  console.log(JSON.stringify({
    ports: ports.ports, registered: info.name, signals: info.signals.map((s) => s.name),
    schemaFields: JSON.parse(schema.avro_json).fields.map((f) => f.name),
    live, stored, envelope, notFound,
  }));
  client.close();
}

main().catch((err) => { console.error(err); process.exit(1); });
