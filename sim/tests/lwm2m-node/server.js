#!/usr/bin/env node
/*
 * Third-party LwM2M 1.0 server for fleetsim integration tests.
 *
 * A thin wrapper around the npm package lwm2m-node-lib 1.4.0 (pinned in
 * package.json / package-lock.json next to this file). That library has no
 * REST API, so this script turns it into a child process that talks JSON
 * lines: events and replies on stdout, commands on stdin.
 *
 * Finding the library: plain require('lwm2m-node-lib'), resolved through
 * NODE_PATH. Nothing is installed in the source tree. The test script does:
 *
 *   mkdir -p target/test-deps/lwm2m-node
 *   cp sim/tests/lwm2m-node/package*.json target/test-deps/lwm2m-node/
 *   npm ci --prefix target/test-deps/lwm2m-node
 *   NODE_PATH=$PWD/target/test-deps/lwm2m-node/node_modules \
 *     node sim/tests/lwm2m-node/server.js --port 5683
 *
 * Options:
 *   --port N            UDP port (udp4). 0 lets the OS pick (best for tests);
 *                       the real port is in the "listening" event. A busy
 *                       port is an error (exit 1). The library always binds
 *                       0.0.0.0 (it gives no way to choose the address).
 *   --timeout-ms N      Give up on a device request after N ms (default 10000).
 *                       The library itself only fails after 247 s.
 *   --write-format F    Content-Format of Write/Execute payloads, a name or a
 *                       number from FORMATS below (default text/plain = 0; the
 *                       library's own default is the pre-1.0 number 1541).
 *   --log-level L       Library log level (default FATAL); logs go to stderr.
 * The library also reads LWM2M_* environment variables (LWM2M_PORT,
 * LWM2M_WRITE_FORMAT, LWM2M_DEFAULT_ACCEPT_FORMAT, ...) and lets them win.
 *
 * stdout, one JSON object per line:
 *   {"event":"listening","port":N}
 *   {"event":"registration","ep","id","location","lifetime","binding","lwm2m","objects","address"}
 *   {"event":"update","ep","id","location","lifetime","objects","address"}
 *   {"event":"unregistration","ep","id"}
 *   {"event":"expired","ep","id"}      lifetime ran out (checked every second)
 *   {"event":"notify","ep","path","value"}
 *   {"event":"error","message"}        anything unexpected; the server goes on
 *   {"id":..,"ok":true,"value":..} / {"id":..,"ok":false,"error":"..","code":".."}
 *
 * stdin, one JSON object per line, each with an "id" echoed in the reply:
 *   {"id":1,"op":"read","ep":"SN-1","path":"/3/0/9"}      value: payload text
 *   {"id":2,"op":"write","ep":"SN-1","path":"/1/0/1","value":"120"}
 *   {"id":3,"op":"execute","ep":"SN-1","path":"/3/0/4"}   ("value" optional)
 *   {"id":4,"op":"observe","ep":"SN-1","path":"/3303/0/5700"}  value: first value
 *   {"id":5,"op":"cancel","ep":"SN-1","path":"/3303/0/5700"}   forget an observation
 *   {"id":6,"op":"discover","ep":"SN-1","path":"/3/0"}    value: link-format text
 *   {"id":7,"op":"write-attributes","ep":"SN-1","path":"/3303/0/5700","attributes":{"pmin":1}}
 *   {"id":8,"op":"stats"}     value: counters and "registered" (devices now known)
 *   {"id":9,"op":"devices"}   value: endpoint names now registered
 * read and observe also take "accept": a format name or number (sets CoAP
 * Accept for that request; by default no Accept option is sent). write and
 * execute take "format" to override --write-format for that request.
 * The process exits when stdin closes.
 *
 * What the library does (lwm2m-node-lib 1.4.0 with coap 0.22.0), as seen on
 * the wire against a hand-written device:
 *  - Registration: POST /rd?ep=..; only ep is required (no lwm2m=1.0, lt or
 *    b needed; no lt means the device never expires). Answer: 2.01 with ONE
 *    Location-Path option "rd/<n>" (a slash inside the value); updates and
 *    deletes work with Uri-Path "rd","<n>" or "rd/<n>". <n> is a counter, and
 *    a new registration of the same ep gets a new <n> (the old one is 4.04).
 *    Lifetime is checked with no grace: gone lt seconds after the last
 *    registration or update ("expired" event).
 *  - A request whose message id equals that of the request the server got
 *    just before it, from any device, is dropped as a duplicate: after 500 ms
 *    coap sends an empty ACK, then nothing. Devices need random start ids.
 *  - Paths: the library always builds "/type/instance/resource". Read, write,
 *    execute and observe of a whole instance (/3/0) or object (/3) work here
 *    by passing "" for the missing parts: coap drops empty path segments, so
 *    the device sees Uri-Path 3,0. Discover takes 1 to 3 parts natively.
 *  - Values are the response payload decoded as UTF-8, so a binary (TLV)
 *    answer comes back mangled; ask for text or JSON with "accept".
 *  - Requests to devices are CON, token 4 bytes, from the server's port: the
 *    library sends them to its own socket as CoAP proxy requests (Proxy-Uri)
 *    and the proxy forwards the same message (same id and token). Answers
 *    travel back by token, but nothing the server's side sends to an empty
 *    ACK or a CON response reaches the device: CON notifications and CON
 *    separate responses are never ACKed. Use NON notifications.
 *  - Observe: the first answer must carry Observe >= 1 and later ones must
 *    count up; a first answer with Observe 0 or none, or an error code, never
 *    calls back (the command times out). Notifications with an old number
 *    are dropped. "cancel" is local only: no RST, no GET with Observe=1.
 *  - A device that answers with a Content-Format coap does not know makes coap
 *    throw inside a socket handler ("error" event, command times out);
 *    FORMATS below registers the usual LwM2M ones so they are fine.
 */
'use strict';

var readline = require('readline');

function emit(obj) {
    process.stdout.write(JSON.stringify(obj) + '\n');
}

process.stdout.on('error', function () { process.exit(0); });
process.on('uncaughtException', function (e) {
    emit({ event: 'error', message: String(e && e.stack || e) });
});

var lwm2m;
try {
    lwm2m = require('lwm2m-node-lib');
} catch (e) {
    emit({ event: 'error', message: 'cannot load lwm2m-node-lib (set NODE_PATH to its node_modules): ' + e.message });
    process.exit(2);
}
var server = lwm2m.server;

// Send the library's own log lines to stderr so stdout stays pure JSON.
try {
    var libDir = require('path').dirname(require.resolve('lwm2m-node-lib/package.json'));
    require(require.resolve('logops', { paths: [libDir] })).setStream(process.stderr);
} catch (e) { /* keep the default; FATAL level keeps it quiet anyway */ }

// Content-Formats coap should know, by name (coap wants names, not numbers).
var FORMATS = [
    ['text/plain', 0], ['application/link-format', 40], ['application/octet-stream', 42],
    ['application/json', 50], ['application/cbor', 60],
    ['application/senml+json', 110], ['application/senml+cbor', 112],
    ['lightweightm2m/text', 1541], ['lightweightm2m/tlv', 1542], ['lightweightm2m/json', 1543],
    ['application/vnd.oma.lwm2m+tlv', 11542], ['application/vnd.oma.lwm2m+json', 11543],
    ['application/vnd.oma.lwm2m+cbor', 11544]
];

// Accept "0", 0 or "text/plain"; return the name coap knows, or throw.
function formatName(f) {
    for (var i = 0; i < FORMATS.length; i++) {
        if (FORMATS[i][0] === String(f) || String(FORMATS[i][1]) === String(f)) {
            return FORMATS[i][0];
        }
    }
    throw new Error('unknown content format: ' + f);
}

// ---- command line ----
var args = { port: null, timeoutMs: 10000, writeFormat: 'text/plain', logLevel: 'FATAL' };
for (var i = 2; i < process.argv.length; i++) {
    var a = process.argv[i], v = process.argv[i + 1];
    if (a === '--port') { args.port = Number(v); i++; }
    else if (a === '--timeout-ms') { args.timeoutMs = Number(v); i++; }
    else if (a === '--write-format') { args.writeFormat = formatName(v); i++; }
    else if (a === '--log-level') { args.logLevel = v; i++; }
    else { emit({ event: 'error', message: 'unknown argument: ' + a }); process.exit(2); }
}
if (args.port === null || !(args.port >= 0 && args.port < 65536)) {
    emit({ event: 'error', message: 'usage: server.js --port N [--timeout-ms N] [--write-format F] [--log-level L]' });
    process.exit(2);
}

// The library keeps a reference to this object and reads it on every request.
var config = {
    port: args.port,
    serverProtocol: 'udp4',     // socket type
    ipProtocol: 'udp4',         // where it sends its internal proxy requests (127.0.0.1)
    defaultType: 'device',      // without it every registration fails with 4.04
    deviceRegistry: { type: 'memory' },
    lifetimeCheckInterval: 1000,
    logLevel: args.logLevel,
    formats: FORMATS.map(function (f) { return { name: f[0], value: f[1] }; }),
    writeFormat: args.writeFormat
};

var stats = { registrations: 0, updates: 0, unregistrations: 0, expirations: 0, notifications: 0 };
var serverInfo = null;

function lifetimeOf(lt) {
    return lt === undefined || lt === null || lt === '' ? null : Number(lt);
}

// ---- device-initiated operations ----
function onRegistration(ep, lt, version, binding, payload, callback) {
    stats.registrations++;
    server.getDevice(ep, function (err, dev) {
        emit({
            event: 'registration', ep: ep, id: dev ? dev.id : null,
            location: dev ? '/rd/' + dev.id : null,
            lifetime: lifetimeOf(lt), binding: binding === undefined ? null : binding,
            lwm2m: version === undefined ? null : version, objects: payload,
            address: dev ? dev.address + ':' + dev.port : null
        });
        callback();     // lets the library answer 2.01 Created + Location-Path
    });
}

function onUpdate(dev, payload, callback) {
    stats.updates++;
    emit({
        event: 'update', ep: dev.name, id: dev.id, location: '/rd/' + dev.id,
        lifetime: lifetimeOf(dev.lifetime), objects: payload || null,
        address: dev.address + ':' + dev.port
    });
    callback();         // 2.04 Changed
}

function onUnregistration(dev, callback) {
    stats.unregistrations++;
    emit({ event: 'unregistration', ep: dev.name, id: dev.id });
    callback();         // 2.02 Deleted
}

function onExpired(dev, callback) {
    stats.expirations++;
    emit({ event: 'expired', ep: dev.name, id: dev.id });
    callback();
}

// ---- server-initiated operations ----

// "/3303/0/5700" -> ["3303", "0", "5700"]; missing parts are "".
function splitPath(path) {
    var m = /^\/(\d+)(?:\/(\d+))?(?:\/(\d+))?$/.exec(String(path || ''));
    if (!m) { throw new Error('bad path: ' + path); }
    return [m[1], m[2] || '', m[3] || ''];
}

// Run fn with some config fields changed. The library reads config while
// building the request, synchronously inside the call, so restoring right
// after the call is enough.
function withConfig(changes, fn) {
    var saved = {};
    Object.keys(changes).forEach(function (k) { saved[k] = config[k]; config[k] = changes[k]; });
    try { fn(); } finally { Object.keys(saved).forEach(function (k) { config[k] = saved[k]; }); }
}

function describe(err) {
    if (err && err.name && err.message) { return err.name + ': ' + err.message; }
    return String(err && (err.message || err.name) || err);
}

function handle(cmd, reply) {
    var op = cmd.op;

    if (op === 'stats' || op === 'devices') {
        return server.listDevices(function (err, list) {
            if (err) { return reply(err); }
            if (op === 'devices') { return reply(null, list.map(function (d) { return d.name; })); }
            var v = {};
            Object.keys(stats).forEach(function (k) { v[k] = stats[k]; });
            v.registered = list.length;
            reply(null, v);
        });
    }

    var p = splitPath(cmd.path);
    server.getDevice(cmd.ep, function (err, dev) {
        if (err) { return reply(err); }
        var id = dev.id;    // the library addresses devices by registry id, not endpoint name
        try {
            switch (op) {
            case 'read':
                withConfig(cmd.accept !== undefined ? { defaultAcceptFormat: formatName(cmd.accept) } : {},
                    function () { server.read(id, p[0], p[1], p[2], reply); });
                break;
            case 'write':
                if (cmd.value === undefined) { throw new Error('write needs "value"'); }
                withConfig(cmd.format !== undefined ? { writeFormat: formatName(cmd.format) } : {},
                    function () { server.write(id, p[0], p[1], p[2], String(cmd.value), reply); });
                break;
            case 'execute':
                withConfig(cmd.format !== undefined ? { writeFormat: formatName(cmd.format) } : {},
                    function () {
                        server.execute(id, p[0], p[1], p[2],
                            cmd.value === undefined ? undefined : String(cmd.value), reply);
                    });
                break;
            case 'observe':
                withConfig(cmd.accept !== undefined ? { defaultAcceptFormat: formatName(cmd.accept) } : {},
                    function () {
                        server.observe(id, p[0], p[1], p[2], function (value) {
                            stats.notifications++;
                            emit({ event: 'notify', ep: cmd.ep, path: cmd.path, value: value });
                        }, reply);
                    });
                break;
            case 'cancel':
                server.cancelObserver(id, p[0], p[1], p[2], reply);
                break;
            case 'discover':
                // discover() counts its arguments, so pass only the parts given.
                var parts = p.filter(function (x) { return x !== ''; });
                server.discover.apply(null, [id].concat(parts, [reply]));
                break;
            case 'write-attributes':
                server.writeAttributes(id, p[0], p[1] || undefined, p[2] || undefined,
                    cmd.attributes || {}, reply);
                break;
            default:
                throw new Error('unknown op: ' + op);
            }
        } catch (e) {
            reply(e);
        }
    });
}

function onLine(line) {
    if (!line.trim()) { return; }
    var cmd;
    try { cmd = JSON.parse(line); } catch (e) {
        return emit({ id: null, ok: false, error: 'bad JSON: ' + e.message });
    }
    var done = false;
    var timeoutMs = cmd.timeout_ms || args.timeoutMs;
    // The library may call back late (after our timeout) or never; answer once.
    var timer = setTimeout(function () {
        reply(new Error('timeout after ' + timeoutMs + ' ms'));
    }, timeoutMs);
    function reply(err, value) {
        if (done) { return; }
        done = true;
        clearTimeout(timer);
        if (err) {
            var out = { id: cmd.id, ok: false, error: describe(err) };
            if (err.code) { out.code = err.code; }
            emit(out);
        } else {
            emit({ id: cmd.id, ok: true, value: value === undefined ? null : value });
        }
    }
    try { handle(cmd, reply); } catch (e) { reply(e); }
}

function shutdown() {
    var exit = function () { process.exit(0); };
    setTimeout(exit, 2000).unref();
    try { server.stop(serverInfo, exit); } catch (e) { exit(); }
}

// ---- start ----
// coap binds with SO_REUSEADDR, so a second server on a busy port would start
// "fine" and steal or lose datagrams. Probe the port first without that flag.
function checkPortFree(port, cb) {
    if (port === 0) { return cb(); }
    var probe = require('dgram').createSocket('udp4');
    probe.once('error', function (e) {
        emit({ event: 'error', message: 'port ' + port + ' is not free: ' + e.message });
        process.exit(1);
    });
    probe.bind(port, function () { probe.close(cb); });
}

checkPortFree(args.port, function () { server.start(config, onStarted); });

function onStarted(err, info) {
    if (err) {
        emit({ event: 'error', message: 'start failed: ' + describe(err) });
        process.exit(1);
    }
    serverInfo = info;
    // With port 0 the library would send its proxy requests to port 0; tell it the real one.
    config.port = info.server._sock.address().port;

    server.setHandler(info, 'registration', onRegistration);
    server.setHandler(info, 'updateRegistration', onUpdate);
    server.setHandler(info, 'unregistration', onUnregistration);
    // setHandler('unregistration') also restarts the lifetime check with no
    // interval (every 1 ms) and the unregistration handler; replace it so
    // expiry is checked once a second and reported as its own event.
    server.getRegistry().checkLifetime(config.lifetimeCheckInterval, onExpired);

    emit({ event: 'listening', port: config.port });

    var rl = readline.createInterface({ input: process.stdin, terminal: false });
    rl.on('line', onLine);
    rl.on('close', shutdown);
}
