// The KMS round trip with @aws-sdk/client-kms against keybroker (tests/integration/test_kms.py).
// Reads {endpoint, accessKeyId, secretAccessKey, keyId, plaintext, context, document,
// debugDocument} (blobs in base64) as JSON on stdin; writes one JSON object on stdout:
// the Encrypt answer's KeyId, the CiphertextForRecipient of a Decrypt with the Recipient, and
// the error name and message the debug document's Decrypt was refused with.
import { DecryptCommand, EncryptCommand, KMSClient } from "@aws-sdk/client-kms";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const input = JSON.parse(Buffer.concat(chunks).toString("utf8"));
const bytes = (text) => new Uint8Array(Buffer.from(text, "base64"));
const recipient = (document) => ({
  KeyEncryptionAlgorithm: "RSAES_OAEP_SHA_256",
  AttestationDocument: bytes(document),
});

const kms = new KMSClient({
  endpoint: input.endpoint,
  region: "eu-west-1",
  credentials: { accessKeyId: input.accessKeyId, secretAccessKey: input.secretAccessKey },
  maxAttempts: 1,
});

const encrypted = await kms.send(
  new EncryptCommand({
    KeyId: input.keyId,
    Plaintext: bytes(input.plaintext),
    EncryptionContext: input.context,
  }),
);
const decrypted = await kms.send(
  new DecryptCommand({
    CiphertextBlob: encrypted.CiphertextBlob,
    EncryptionContext: input.context,
    Recipient: recipient(input.document),
  }),
);
let refused = null;
try {
  await kms.send(
    new DecryptCommand({
      CiphertextBlob: encrypted.CiphertextBlob,
      EncryptionContext: input.context,
      Recipient: recipient(input.debugDocument),
    }),
  );
} catch (error) {
  refused = { name: error.name, message: error.message };
}
process.stdout.write(
  JSON.stringify({
    keyId: encrypted.KeyId,
    plaintextReturned: decrypted.Plaintext !== undefined,
    ciphertextForRecipient: Buffer.from(decrypted.CiphertextForRecipient).toString("base64"),
    refused,
  }),
);
