export * from './client';
export * from './endpoints';
export * from './upload';
export type * from './types';
export * from './gzip';
