// Baileys against wa-sim, driven by a test over stdin/stdout, one JSON object per line.
//
// Environment: SIM_URL (wa-sim's WebSocket URL), SIM_ROOT_KEY (hex of wa-sim's certificate
// root: Baileys checks the server's certificate chain against WhatsApp's root, which only
// WhatsApp can sign for, so the harness trusts the simulator's instead; the equivalent of
// whatsapp-rust's danger-skip-cert-chain-verify, in a test only), AUTH_DIR (Baileys'
// multi-file auth state, as Hermes' bridge keeps it), PAIR_PHONE (link by pairing code for
// this number instead of a QR code).
//
// Events out: {"event":"qr","qr"}, {"event":"pair_code","code"}, {"event":"open","id","lid"},
// {"event":"close","code"}, {"event":"message","chat","sender","id","text","from_me"},
// {"event":"sent","id"}, {"event":"error","message"}.
// Commands in: {"cmd":"send","to","text"}, {"cmd":"quit"}.

import readline from 'node:readline'
import makeWASocket, { Browsers, DisconnectReason, WA_CERT_DETAILS, useMultiFileAuthState } from '@whiskeysockets/baileys'
import pino from 'pino'

const { SIM_URL, SIM_ROOT_KEY, AUTH_DIR, PAIR_PHONE } = process.env
if (!SIM_URL || !SIM_ROOT_KEY || !AUTH_DIR) {
  console.error('SIM_URL, SIM_ROOT_KEY and AUTH_DIR must be set')
  process.exit(2)
}
WA_CERT_DETAILS.PUBLIC_KEY = Buffer.from(SIM_ROOT_KEY, 'hex')

const emit = (value) => process.stdout.write(JSON.stringify(value) + '\n')
const logger = pino({ level: process.env.BAILEYS_LOG || 'warn' }, pino.destination(2))
const { state, saveCreds } = await useMultiFileAuthState(AUTH_DIR)

let sock
let codeRequested = false
// Set on `quit`: the connection's end is ours, not one to ride out.
let quitting = false

const textOf = (m) => m?.conversation ?? m?.extendedTextMessage?.text ?? null

function connect() {
  sock = makeWASocket({
    auth: state,
    waWebSocketUrl: SIM_URL,
    logger,
    browser: Browsers.ubuntu('Chrome'),
    markOnlineOnConnect: false,
    // The simulated phone's history is one empty chunk; nothing to fetch on demand.
    syncFullHistory: false,
  })
  sock.ev.on('creds.update', saveCreds)
  sock.ev.on('connection.update', async ({ connection, lastDisconnect, qr }) => {
    if (qr && PAIR_PHONE && !codeRequested) {
      codeRequested = true
      try {
        emit({ event: 'pair_code', code: await sock.requestPairingCode(PAIR_PHONE) })
      } catch (e) {
        emit({ event: 'error', message: String(e) })
      }
    } else if (qr && !PAIR_PHONE) {
      emit({ event: 'qr', qr })
    }
    if (connection === 'open') {
      emit({ event: 'open', id: sock.user?.id, lid: sock.user?.lid ?? null })
    }
    if (connection === 'close') {
      const code = lastDisconnect?.error?.output?.statusCode ?? null
      emit({ event: 'close', code })
      // After linking the server asks for a new connection (515); anything but a logout or a
      // replacement is reconnected, as Hermes' bridge does.
      if (!quitting && code !== DisconnectReason.loggedOut && code !== DisconnectReason.connectionReplaced) {
        connect()
      }
    }
  })
  sock.ev.on('messages.upsert', ({ messages }) => {
    for (const m of messages) {
      const text = textOf(m.message)
      if (text === null) continue
      emit({
        event: 'message',
        chat: m.key.remoteJid,
        sender: m.key.participant || m.key.remoteJid,
        id: m.key.id,
        text,
        from_me: Boolean(m.key.fromMe),
      })
    }
  })
}

connect()

for await (const line of readline.createInterface({ input: process.stdin })) {
  let cmd
  try {
    cmd = JSON.parse(line)
  } catch {
    emit({ event: 'error', message: `not JSON: ${line}` })
    continue
  }
  if (cmd.cmd === 'send') {
    try {
      const sent = await sock.sendMessage(cmd.to, { text: cmd.text })
      emit({ event: 'sent', id: sent?.key?.id })
    } catch (e) {
      emit({ event: 'error', message: String(e?.stack ?? e) })
    }
  } else if (cmd.cmd === 'quit') {
    quitting = true
    break
  }
}
sock?.end(undefined)
// Let the auth state's last writes land before leaving.
await new Promise((resolve) => setTimeout(resolve, 200))
process.exit(0)
