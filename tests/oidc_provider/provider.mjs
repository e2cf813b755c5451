// A real OpenID provider for the SSO tests: panva/oidc-provider (OpenID certified)
// with its development login page. The tests start it on a free loopback port:
//
//   node provider.mjs PORT CONFIG.json
//
// CONFIG.json holds {client_id, client_secret, jwks, accounts}; `accounts` maps a
// login name to its claims and is re-read at every login, so a test can remove a
// user from a group at the provider. Any password is accepted.
import { readFileSync } from 'node:fs';

import Provider, { errors } from 'oidc-provider';

const [port, configPath] = process.argv.slice(2);
const load = () => JSON.parse(readFileSync(configPath, 'utf8'));
const config = load();
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: config.client_id,
    client_secret: config.client_secret,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_post',
    redirect_uris: ['http://testserver/oidc/callback/'],
    post_logout_redirect_uris: ['http://testserver/accounts/login/'],
  }],
  jwks: config.jwks,
  pkce: { required: () => true },
  claims: {
    openid: ['sub'],
    email: ['email'],
    profile: ['name', 'preferred_username', 'groups'],
  },
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  cookies: { keys: ['aispm-test-provider-cookie-key'] },
  ttl: { Session: 3600, Grant: 3600, IdToken: 3600, AccessToken: 3600 },
  async findAccount(ctx, id) {
    const claims = load().accounts[id];
    // A user removed at the provider: their session no longer signs anyone in.
    if (!claims) throw new errors.LoginRequired('the account no longer exists');
    return { accountId: id, claims: async () => ({ sub: id, ...claims }) };
  },
  // aispm is a first-party client: no consent screen.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid email profile');
    grant.addOIDCClaims(['groups', 'name', 'preferred_username', 'email']);
    await grant.save();
    return grant;
  },
});

// The test server's port is chosen at run time: allow any loopback port for the
// callback and the post-logout landing page, and the Django test client's host.
const loopback = /^http:\/\/(localhost|127\.0\.0\.1|testserver)(:\d+)?\//;
provider.Client.prototype.redirectUriAllowed = function (uri) {
  return loopback.test(uri) && new URL(uri).pathname === '/oidc/callback/';
};
provider.Client.prototype.postLogoutRedirectUriAllowed = function (uri) {
  return loopback.test(uri);
};

provider.listen(Number(port), '127.0.0.1', () => {
  console.log(`listening ${issuer}`);
});
